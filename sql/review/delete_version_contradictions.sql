-- purpose: remove one index version's rows from review_contradictions before they are written
--          again (a rerun of the version replaces them).
-- inputs:  review_contradictions; $version
-- output:  the version's rows deleted
-- grain:   as review_contradictions
delete from review_contradictions where version = $version
