-- fail: unknown_column
SELECT p.salary, COUNT(*) AS n FROM pums AS p GROUP BY p.salary
