-- fail: having
SELECT race, COUNT(*) AS n FROM pums GROUP BY race
HAVING race IN (SELECT race FROM pums GROUP BY race)
