-- ok
SELECT race, COUNT(DISTINCT age) AS ages FROM pums GROUP BY race
