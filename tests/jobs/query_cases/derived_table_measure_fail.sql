-- fail: measure_outside_aggregate, column: pums.income
SELECT s.race, AVG(s.income) AS mean_income FROM (SELECT race, income FROM pums WHERE income >= 18) AS s GROUP BY s.race
