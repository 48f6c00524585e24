-- fail: subquery
SELECT s.race, SUM(s.n) AS total FROM (SELECT race, COUNT(*) AS n FROM pums GROUP BY race) AS s GROUP BY s.race
