-- fail: row_level_output
SELECT DISTINCT race FROM pums
