-- fail: aggregate_argument, column: pums.income
SELECT SUM(GREATEST(income, 100000)) AS s FROM pums
