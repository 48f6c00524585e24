-- fail: aggregate_argument, column: pums.income
SELECT SUM(income > 50000) AS k FROM pums
