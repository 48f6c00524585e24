-- ok
SELECT married, COUNT(*) AS n, AVG(married) AS share FROM pums WHERE married IS NOT NULL GROUP BY married
