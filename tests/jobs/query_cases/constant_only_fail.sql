-- fail: row_level_output
SELECT 1 AS one FROM pums
