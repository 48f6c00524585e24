-- fail: single_select
DESCRIBE pums
