-- fail: aggregate_argument, column: pums.married
SELECT SUM(income * married) AS s FROM pums
