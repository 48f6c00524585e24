-- fail: aggregate_argument, column: pums.race
SELECT SUM(income * (race = 5)) AS s FROM pums
