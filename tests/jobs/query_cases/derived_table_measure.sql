-- ok
SELECT s.race, AVG(s.income) AS mean_income FROM (SELECT race, income FROM pums WHERE age >= 18) AS s GROUP BY s.race
