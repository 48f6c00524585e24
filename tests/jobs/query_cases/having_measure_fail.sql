-- fail: having
SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING SUM(income) > 1000000
