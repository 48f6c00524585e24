-- fail: aggregate_argument, column: pums.race
SELECT COUNT(IF(race = 5, 1, NULL)) AS n FROM pums
