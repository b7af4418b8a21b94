-- purpose: remove one index version's row from review_versions before it is written again.
-- inputs:  review_versions; $version
-- output:  the version's row deleted
-- grain:   one row per version
delete from review_versions where version = $version
