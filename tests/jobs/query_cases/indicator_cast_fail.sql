-- fail: aggregate_argument, column: pums.race
SELECT SUM(income * CAST(race = 5 AS INT)) AS s FROM pums
