-- fail: subquery
WITH t AS (SELECT race, SUM(income) AS s FROM pums GROUP BY race) SELECT COUNT(*) AS n FROM t
