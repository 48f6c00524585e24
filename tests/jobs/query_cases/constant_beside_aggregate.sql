-- ok
SELECT 2024 AS year, COUNT(*) AS n FROM pums
