-- fail: measure_outside_aggregate, column: pums.income
SELECT LOWER(CAST(income AS VARCHAR)) AS t, COUNT(*) AS n FROM pums GROUP BY LOWER(CAST(income AS VARCHAR))
