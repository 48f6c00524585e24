-- ok
SELECT 1 AS one, COUNT(*) AS n FROM pums
