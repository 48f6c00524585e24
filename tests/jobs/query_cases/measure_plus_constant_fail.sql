-- fail: aggregate_argument, column: pums.income
SELECT SUM(income + 1) AS s FROM pums
