-- fail: having
SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING SUM(income) > 50000 OR COUNT(*) > 500
