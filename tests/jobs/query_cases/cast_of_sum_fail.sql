-- fail: aggregate_output
SELECT race, CAST(SUM(income) AS TINYINT) AS s FROM pums GROUP BY race
