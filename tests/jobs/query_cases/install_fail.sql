-- fail: single_select
INSTALL httpfs
