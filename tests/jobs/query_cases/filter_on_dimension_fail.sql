-- fail: measure_outside_aggregate, column: pums.income
SELECT race, COUNT(*) AS n FROM pums WHERE income > 100000 GROUP BY race
