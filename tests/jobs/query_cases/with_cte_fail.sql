-- fail: subquery
WITH adults AS (SELECT race FROM pums WHERE age >= 18) SELECT race, COUNT(*) AS n FROM adults GROUP BY race
