-- fail: measure_outside_aggregate, column: pums.income
SELECT COUNT(*) AS n FROM pums WHERE CAST(CASE WHEN race = 5 AND income > 50000 THEN 'x' ELSE '1' END AS INT) = 1
