-- fail: aggregate_argument, column: pums.income
SELECT SUM(COALESCE(NULLIF(income, 56000), 0)) AS s FROM pums
