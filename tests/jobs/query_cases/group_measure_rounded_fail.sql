-- fail: measure_outside_aggregate, column: pums.income
SELECT ROUND(income, -5) AS band, COUNT(*) AS n FROM pums GROUP BY ROUND(income, -5)
