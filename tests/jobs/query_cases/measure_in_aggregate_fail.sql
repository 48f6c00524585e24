-- fail: measure_outside_aggregate, column: pums.income
SELECT race, income FROM pums GROUP BY race, income
