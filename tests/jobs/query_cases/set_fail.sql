-- fail: single_select
SET enable_external_access = true
