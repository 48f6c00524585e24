-- ok
SELECT race, MEDIAN(income) AS mid FROM pums GROUP BY race
