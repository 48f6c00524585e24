-- fail: aggregate_argument, column: pums.income
SELECT MAX(income >= 56000) AS k FROM pums
