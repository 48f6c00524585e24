-- fail: reserved_name
SELECT race, COUNT(*) AS n, SUM(income) AS n FROM pums GROUP BY race
