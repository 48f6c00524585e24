-- fail: single_select
LOAD httpfs
