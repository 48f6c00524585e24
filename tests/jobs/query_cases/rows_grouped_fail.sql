-- fail: row_level_output
SELECT age, sex FROM pums
