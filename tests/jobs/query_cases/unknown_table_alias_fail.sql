-- fail: unknown_column
SELECT x.race, COUNT(*) AS n FROM pums AS p GROUP BY x.race
