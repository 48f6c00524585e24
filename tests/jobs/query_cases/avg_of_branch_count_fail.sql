-- fail: aggregate_argument, column: pums.sex
SELECT AVG(CASE WHEN sex = 0 THEN 1 ELSE 2 END) AS a FROM pums
