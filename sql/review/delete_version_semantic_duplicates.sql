-- purpose: remove one index version's rows from review_semantic_duplicates before they are written
--          again (a rerun of the version replaces them).
-- inputs:  review_semantic_duplicates; $version
-- output:  the version's rows deleted
-- grain:   as review_semantic_duplicates
delete from review_semantic_duplicates where version = $version
