-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums WHERE age > (SELECT AVG(age) FROM pums) GROUP BY race
