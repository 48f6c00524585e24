-- fail: aggregate_argument, column: pums.income
SELECT AVG(CASE WHEN race = 5 THEN income ELSE 100000 END) AS s FROM pums
