-- fail: aggregate_argument, column: pums.income
SELECT SUM(income / income) AS s FROM pums
