-- fail: aggregate_argument, column: pums.income
SELECT COUNT(DISTINCT income > 50000) AS k FROM pums
