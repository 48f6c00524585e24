-- fail: measure_outside_aggregate, column: pums.income
SELECT income > 50000 AS rich, COUNT(*) AS n FROM pums GROUP BY income > 50000
