-- fail: single_select
DELETE FROM pums
