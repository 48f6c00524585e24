-- ok
SELECT race, COUNT(DISTINCT pid) AS persons FROM pums GROUP BY race
