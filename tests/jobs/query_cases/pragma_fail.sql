-- fail: single_select
PRAGMA database_list
