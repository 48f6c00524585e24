-- fail: single_select
UPDATE pums SET income = 0
