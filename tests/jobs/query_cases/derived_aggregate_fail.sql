-- fail: subquery
SELECT COUNT(*) AS n FROM (SELECT race, SUM(income) AS s FROM pums GROUP BY race) AS t
