-- ok
SELECT COUNT(*) AS n FROM pums
