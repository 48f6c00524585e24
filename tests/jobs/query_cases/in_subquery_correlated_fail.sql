-- fail: subquery
SELECT p.race, COUNT(*) AS n FROM pums AS p
WHERE p.educ IN (SELECT q.educ FROM pums AS q WHERE q.race = p.race GROUP BY q.educ)
GROUP BY p.race
