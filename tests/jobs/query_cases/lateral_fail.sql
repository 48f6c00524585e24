-- fail: subquery
SELECT p.race, COUNT(*) AS n FROM pums AS p, LATERAL (SELECT p.age) AS l GROUP BY p.race
