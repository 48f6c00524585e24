-- fail: subquery
SELECT race, COUNT(*) AS n FROM pums WHERE age > (SELECT MIN(age) FROM pums WHERE race = 5) GROUP BY race
