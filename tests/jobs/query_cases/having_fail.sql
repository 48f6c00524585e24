-- fail: having
SELECT race, COUNT(*) AS n FROM pums GROUP BY race HAVING race <> 5
